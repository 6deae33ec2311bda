"""One dynamic partition per category folder, across all grabby sources."""

from dagster import DynamicPartitionsDefinition

category_partitions = DynamicPartitionsDefinition(name="category")
