"""`python -m grader`: grade a chat server (and client) of this assignment."""

import sys

from grader.cli import main

sys.exit(main())
