//! Looks CPU model names up in the embedded TDP table, one per line of
//! standard input, and prints `name<TAB>matched<TAB>tdp` (empty fields when
//! no unique match). With no input on a terminal it looks up this machine's
//! CPU. Used to compare the matcher with CodeCarbon's (see docs/energy.md).

use dsnn_energy::cpu_tdp::{CpuInfo, TdpLookup, TdpTable};
use std::io::{BufRead, IsTerminal};

fn main() {
    let table = TdpTable::embedded();
    let stdin = std::io::stdin();
    let names: Vec<String> = if stdin.is_terminal() {
        CpuInfo::detect().model.into_iter().collect()
    } else {
        stdin.lock().lines().map_while(Result::ok).collect()
    };
    for name in names {
        match table.lookup(&name, false) {
            TdpLookup::Found { row, .. } => println!("{name}\t{}\t{}", row.name, row.tdp_w),
            _ => println!("{name}\t\t"),
        }
    }
}
