"""The Spark glue: the session, Delta's jars, the driver JVM's class archive, the warm-up
job, resource profiles and the model UDFs (mapInPandas functions and SQL functions).

Owns every direct use of SparkSession configuration and of pyspark's UDF machinery.
May import: the core modules (config, schema, ...), ``models`` (the UDFs run its
engines), ``lake`` for table reads, ``faults`` (the injected faults a config turns
on). Nothing here is imported by the pure packages.
"""
