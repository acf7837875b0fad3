"""Tests of the viewer's server side: IHE Invoke Image Display's parameters."""
