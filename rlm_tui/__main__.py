from rlm_tui.cli import main

raise SystemExit(main())
