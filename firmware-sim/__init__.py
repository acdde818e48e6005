"""healthhut.firmware_sim: hut-sim, the technicians' device simulator."""
