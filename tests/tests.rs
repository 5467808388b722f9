mod repartition;
