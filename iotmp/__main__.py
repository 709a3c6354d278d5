"""``python -m iotmp``: the same as the ``iotmp`` command."""

import sys

from iotmp.cli import main

sys.exit(main())
