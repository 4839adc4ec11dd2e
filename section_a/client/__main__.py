"""`python -m section_a.client`: run the terminal client."""

import sys

from section_a.client.app import main

sys.exit(main())
