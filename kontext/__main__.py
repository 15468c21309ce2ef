from kontext.tools.cli import main

raise SystemExit(main())
