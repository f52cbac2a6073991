"""Reading files other programs wrote, safely: the hostile-file layer, the stat record,
the file cache and what a certificate's bytes say."""
