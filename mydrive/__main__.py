from mydrive.cli.main import main

main()
