// libzstd (Debian libzstd-dev): `--compress zstd` backups, independent frames.
#include <zstd.h>
