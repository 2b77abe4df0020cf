from orchestrator_cli.main import main

main()
