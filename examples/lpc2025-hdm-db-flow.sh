#!/bin/bash
# The provisioning flow of the LPC 2025 "CXL HDM-DB Support in Linux" slides, verbatim.
# Run it inside: cxlsys run --topology bi-direct -- bash examples/lpc2025-hdm-db-flow.sh
set -e
echo ram > /sys/bus/cxl/devices/decoder2.0/mode
echo 1 > /sys/bus/cxl/devices/decoder2.0/bi
echo 0x20000000 > /sys/bus/cxl/devices/decoder2.0/dpa_size
echo region0 > /sys/bus/cxl/devices/decoder0.0/create_ram_bi_region
echo 256 > /sys/bus/cxl/devices/region0/interleave_granularity
echo 1 > /sys/bus/cxl/devices/region0/interleave_ways
echo 0x20000000 > /sys/bus/cxl/devices/region0/size
echo decoder2.0 > /sys/bus/cxl/devices/region0/target0
echo 1 > /sys/bus/cxl/devices/region0/commit
