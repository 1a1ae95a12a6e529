"""`python -m cpswap` is the `cpswap` command."""
import sys

from cpswap.cli import main

sys.exit(main())
