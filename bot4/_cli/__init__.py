"""The applications built on the library: the ``bot4`` command, its demo and its status view.

Nothing in the library imports from here.
"""
