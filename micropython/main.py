# main.py runs after boot.py on every start of the board: start the pifleet agent.
# Whatever escapes the agent resets the board (a board at the REPL serves nobody until someone power-cycles it);
# KeyboardInterrupt is no Exception: Ctrl-C (mpremote's, the CLI's exec/ls/repl) still ends at the REPL.
import sys

try:
    import agent.app

    agent.app.run()
except Exception as e:  # noqa: BLE001
    if sys.implementation.name != "micropython":
        raise  # a process target under CPython: its runner sees it end
    sys.print_exception(e)
    import machine

    machine.reset()
