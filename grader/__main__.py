"""`python -m grader`: grade a chat server (and client) of this assignment."""

import os
import sys

from grader.cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # whoever read the card went away (`| head`): the programs are stopped
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit either
    sys.exit(1)
