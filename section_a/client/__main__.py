"""`python -m section_a.client`: run the terminal client."""

from section_a.client.app import main

raise SystemExit(main())
