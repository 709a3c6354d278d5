"""Tests of the Home Assistant integration against the local server and virtual devices."""
