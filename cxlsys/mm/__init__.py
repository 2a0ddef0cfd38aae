"""mm/: the twins of the memory-management files the CXL stack reaches.

* ``memory_hotplug`` - mm/memory_hotplug.c: adding/removing memory, onlining/offlining
  blocks, the zone choice, memory groups and the ``memory_hotplug`` module parameters.
* ``memory_tiers`` - mm/memory-tiers.c: memory types, tiers and /sys/devices/virtual/memory_tiering.
"""
