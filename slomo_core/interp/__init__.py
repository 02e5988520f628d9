"""Frame interpolators behind one interface: the Super SloMo network and the weight-free DIS one."""
