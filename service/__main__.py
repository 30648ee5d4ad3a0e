from service.cli.parser import main

raise SystemExit(main())
