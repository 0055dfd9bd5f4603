// libdeflate (Debian libdeflate-dev): whole-buffer DEFLATE, the gzip members' compressor.
#include <libdeflate.h>
