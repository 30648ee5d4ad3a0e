from service.testing.fakecalcom.app import main

main()
