from services.opendata.app import main

main()
