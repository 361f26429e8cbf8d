from brefine.cli import main

raise SystemExit(main())
