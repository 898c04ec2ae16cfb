"""What goes onto a board's filesystem, built on the Pi.

Layer: helpers for services, pure apart from running mpy-cross. Flashing, module builds and sync, the virtual
board and process targets use it; it imports none of them (nor storage or web), only pifleet.resources and
pifleet.errors. Its files hold a board's Wi-Fi key and secret: never log them.

- stems: a module version's SHA-256 and its file name on a board (caps/STEM.mpy)
- mpy: mpy-cross for a MicroPython version, builds to .mpy (cached by content), CompileError
- config: config.json as the agent reads it — its one writer on the Pi
- layout: partition tables and littlefs images, bytes in and out
- bundle: every file of a board's filesystem, and the littlefs image for its vfs partition
"""
