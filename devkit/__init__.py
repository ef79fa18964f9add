"""Developer tools, in the source tree only: the local AWS emulator, throwaway certificates, a private
mosquitto, the demo, the fake link and clock the tests drive the loop with.

None of this is in the wheel or the .deb (a gateway runs none of it); `python -m devkit` runs its
commands from a checkout (`make demo`)."""
