//! The clearflow daemon and command-line interface.
