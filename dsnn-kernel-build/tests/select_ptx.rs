//! Which embedded PTX a device loads ([`select_ptx`]): the mapping from a
//! compute capability to a variant, for the default list and for lists with
//! architecture-specific variants.

use dsnn_kernel_build::{select_ptx, Ptx, PtxSelectError, DEFAULT_PTX_ARCHS};

fn variants(archs: &[&'static str]) -> Vec<Ptx> {
    archs
        .iter()
        .map(|&arch| Ptx {
            arch,
            text: "// ptx",
        })
        .collect()
}

fn chosen(list: &[Ptx], major: u32, minor: u32) -> &'static str {
    select_ptx(list, major, minor).unwrap().arch
}

#[test]
fn each_card_of_the_default_list_gets_its_own_ptx_and_newer_cards_the_newest() {
    let list = variants(DEFAULT_PTX_ARCHS);
    assert_eq!(DEFAULT_PTX_ARCHS, ["80", "86", "89", "90"]);
    // A100, A10 / RTX 30, L4 / L40 / RTX 40, H100 / H200.
    assert_eq!(chosen(&list, 8, 0), "80");
    assert_eq!(chosen(&list, 8, 6), "86");
    assert_eq!(chosen(&list, 8, 9), "89");
    assert_eq!(chosen(&list, 9, 0), "90");
    // Jetson Orin (8.7): the newest not above it; the driver compiles 8.6's PTX.
    assert_eq!(chosen(&list, 8, 7), "86");
    // Blackwell (10.0, 12.0) JITs Hopper's PTX.
    assert_eq!(chosen(&list, 10, 0), "90");
    assert_eq!(chosen(&list, 12, 0), "90");
    // The order of the list does not matter.
    let reversed: Vec<Ptx> = list.iter().rev().copied().collect();
    assert_eq!(chosen(&reversed, 8, 9), "89");
}

#[test]
fn an_older_card_than_every_variant_is_a_clear_error() {
    let list = variants(DEFAULT_PTX_ARCHS);
    let e = select_ptx(&list, 7, 5).unwrap_err();
    assert_eq!(
        e,
        PtxSelectError::NoneFits {
            major: 7,
            minor: 5,
            built: "80,86,89,90".into()
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("7.5") && msg.contains("DSNN_PTX_ARCHS"),
        "{msg}"
    );
    assert!(select_ptx(&[], 9, 0).is_err());
}

#[test]
fn architecture_specific_ptx_loads_only_on_its_own_architecture_and_is_preferred_there() {
    let list = variants(&["80", "90", "90a", "100a"]);
    assert_eq!(chosen(&list, 9, 0), "90a");
    assert_eq!(chosen(&list, 10, 0), "100a");
    // 12.0 cannot use 10.0's specific PTX: the portable 9.0 one.
    assert_eq!(chosen(&list, 12, 0), "90");
    assert_eq!(chosen(&list, 8, 9), "80");
    let only_specific = variants(&["90a"]);
    assert!(select_ptx(&only_specific, 10, 0).is_err());
    // nvcc's spellings are accepted; anything else is reported.
    assert_eq!(chosen(&variants(&["compute_86"]), 8, 9), "compute_86");
    assert_eq!(
        select_ptx(&variants(&["80", "sm_x"]), 9, 0),
        Err(PtxSelectError::BadArch("sm_x".into()))
    );
}
