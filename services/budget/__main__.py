from services.budget.app import main

main()
