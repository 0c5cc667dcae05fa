-- hrwsi schema, version 51: data engineers insert the columns that say what an input is, not those
-- hrwsi records about it.
--
-- hrwsi_data_engineer could set an input's created_at (a deadline in 2099 from created_at =
-- '2099-01-01', where the deadline counts from it), its source and product_id (source 'chaining'
-- with a product that does not exist: `hrwsi lineage` then said "from chaining" with nothing
-- upstream), and campaign_id (found by exploratory testing, 2026-12-05). The table's INSERT becomes
-- one on the columns a data engineer gives; the others keep their defaults, or are hrwsi's to set.

REVOKE INSERT ON hrwsi.input FROM hrwsi_data_engineer;
GRANT INSERT (processing_condition, input_path, tile, mission, measured_at, published_at, scene_id, lane)
    ON hrwsi.input TO hrwsi_data_engineer;
