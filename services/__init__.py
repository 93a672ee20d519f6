"""lienthong stream processors, the domain core and the command line."""
