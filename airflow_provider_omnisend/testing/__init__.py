"""Test, demo and benchmark support: the Omnisend emulator, local server processes, sample data."""
