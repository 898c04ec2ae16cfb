"""An example role module for the README's `pifleet module upload docs/examples/my_blind.py`: a blind's little
sibling that only knows where it was told it is. Copy it, rename it (NAME is the file's name), and make it yours;
docs/capabilities.md says what a module declares, docs/modules.md how an upload reaches the boards.

Layer: role module (runs on the board). It drives nothing and must not talk to the network.
"""

NAME = "my_blind"
VERSION = "1"
COMMANDS = {
    "set": {"position": {"type": "integer", "min": 0, "max": 100, "unit": "%"}},
    "position": {},
}
CONFIG = {}


class MyBlind:
    def __init__(self):
        self._position = None

    async def set(self, position):
        self._position = position
        return {"position": position}

    async def position(self):
        return {"position": self._position}


def setup(cfg):
    return MyBlind()
