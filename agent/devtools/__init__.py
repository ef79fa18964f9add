"""Developer tools shared by the tests and `make demo`: throwaway certificates, a local mosquitto."""
