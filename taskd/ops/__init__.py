"""Day-2 operations run from the command line: ``taskd doctor`` and ``taskd restore``."""
