# main.py runs after boot.py on every start of the board: count the start (agent/boots.py: three that failed
# before the agent was up give safe mode, the agent without role modules), then start the pifleet agent.
# Whatever escapes the agent resets the board (a board at the REPL serves nobody until someone power-cycles it);
# KeyboardInterrupt is no Exception: Ctrl-C (mpremote's, the CLI's exec/ls/repl) still ends at the REPL — and
# there the watchdog the agent started (it cannot be stopped) is fed by a timer, so a person's session is not
# cut off; the soft reboot that ends it starts the agent again.
import sys

try:
    from agent import boots

    boots.boot()
    del boots
    from agent.port import forget

    forget("boots")
    import agent.app

    agent.app.run()
except Exception as e:  # noqa: BLE001
    if sys.implementation.name != "micropython":
        raise  # a process target under CPython: its runner sees it end
    sys.print_exception(e)
    import machine

    machine.reset()
finally:
    import agent

    if getattr(agent, "WDT", None) is not None:
        from machine import Timer

        Timer(0).init(period=1000, callback=lambda t: agent.WDT.feed())
