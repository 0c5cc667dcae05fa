"""Harvest: where inputs come from, besides a data engineer's INSERT and chaining.

Modules, each one job, imported in this order (no cycle: a module imports only those above it):

- `product_names`: scene id, mission, sensing time and tile read from a product name (pure);
- `schedules`: when a source runs next, which window or days a run covers (pure);
- `confinement`: the landing roots ops allow, and the directories a landing source may use;
- `unzip`: extracting an archive within the ops' size, ratio and member limits;
- `landing_source`: a landing source's configuration;
- `landing_files`: what a landing scan does to files (listing entry by entry, moving, unzipping);
- `landing`: one scan of a landing directory (files dropped there become inputs);
- `catalogue`: the OData catalogue client and the harvest of one catalogue source;
- `sources`: the source kinds (a table), claiming and running due sources concurrently, each with
  its timeout, and `hrwsi sources`;
- `multi_input`: the harvester's step that makes one input per complete multi-input group.

The harvester service (`hrwsi.harvester`) calls `sources` and `multi_input`.
"""
