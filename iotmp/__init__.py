"""iotmp: an IOTMP server, device SDK and application client in Python.

The package is laid out by job, each floor importing only the ones below it:

* :mod:`iotmp.protocol` -- PSON, messages, codec, transports, the session;
* :mod:`iotmp.device` -- the device SDK;
* :mod:`iotmp.client` -- the application client of a server's REST/WebSocket API;
* :mod:`iotmp.server` -- the IOTMP server;
* :mod:`iotmp.sim` -- virtual devices driven by profiles;
* :mod:`iotmp.cli` -- the ``iotmp`` command.

Nothing here imports Home Assistant.
"""

from __future__ import annotations

__version__ = "0.2.0"
