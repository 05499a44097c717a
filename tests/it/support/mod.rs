pub mod temporal;
