-- Helper piece: the queue's settings (ARGV[2], see lib/queue.lua), decoded as locals for the
-- pieces after it. Like every piece, it runs inside the script's `rare()` (see src/scripts.rs),
-- on the first call of `rare()` only: the hot paths that need no helper decode nothing.
local _, MAX_STALLS, DLQ_MAX, DLQ_AGE, MAX_ERRORS, IN_PLACE = struct.unpack('<BI4I8I8BI8', CFG)
local QNAME, CH, WAKE_CH = struct.unpack('<I2c0I2c0I2c0', CFG, 31)
H.max_stalls = MAX_STALLS
H.in_place = IN_PLACE
