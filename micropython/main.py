# main.py runs after boot.py on every start of the board: start the pifleet agent.
import agent.app

agent.app.run()
