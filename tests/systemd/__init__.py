"""`make systemd-test`: the Debian package in a bookworm container booted with systemd as PID 1."""
