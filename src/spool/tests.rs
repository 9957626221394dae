use super::*;

#[test]
fn records_survive_a_reopen_and_a_torn_tail_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 30, u64::MAX).unwrap();
    for i in 0..5u64 {
        assert_eq!(
            s.append(1000 + i, format!("snapshot {i}").as_bytes())
                .unwrap(),
            i
        );
    }
    drop(s);
    // A crash mid-write: half a record at the end of the segment.
    let seg = dir.path().join(segment_name(0));
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let mut s = Spool::open(dir.path(), 1 << 30, u64::MAX).unwrap();
    let e = s.next_after(Some(2)).unwrap();
    assert_eq!((e.seq, e.unix_ms), (3, 1003));
    assert_eq!(&*s.read(&e).unwrap(), b"snapshot 3");
    assert_eq!(s.pending(None), 5);
    // Appends go to a new segment, numbering continues.
    assert_eq!(s.append(2000, b"after").unwrap(), 5);
    assert_eq!(s.segments.len(), 2);
}

#[test]
fn a_flipped_byte_ends_the_segment_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1 << 30, u64::MAX).unwrap();
    for i in 0..3u64 {
        s.append(i, &[i as u8; 100]).unwrap();
    }
    drop(s);
    let seg = dir.path().join(segment_name(0));
    let mut data = fs::read(&seg).unwrap();
    data[HEADER + 100 + HEADER + 50] ^= 0xff; // inside record 1's payload
    fs::write(&seg, data).unwrap();
    let s = Spool::open(dir.path(), 1 << 30, u64::MAX).unwrap();
    assert_eq!(s.pending(None), 1);
    assert!(s.next_after(Some(0)).is_none());
}

#[test]
fn limits_drop_the_oldest_and_say_for_whom() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments (the floor) under a 200 KiB cap.
    let mut s = Spool::open(dir.path(), 200 << 10, 60_000).unwrap();
    let payload = vec![7u8; 30 << 10];
    for i in 0..20u64 {
        s.append(1_000 + i, &payload).unwrap();
    }
    // Sink 0 delivered up to 9, sink 1 nothing yet.
    let dropped = s.collect(2_000, &[Some(9), None]);
    assert!(
        s.bytes() <= (200 << 10) + (64 << 10) + (30 << 10),
        "{}",
        s.bytes()
    );
    assert!(dropped[1].spool_full >= 10, "{dropped:?}");
    assert_eq!(
        dropped[0].spool_full,
        dropped[1].spool_full.saturating_sub(10)
    );
    assert_eq!(s.oldest_ms(), s.next_after(None).map(|e| e.unix_ms));
    // Everything older than max_age goes, counted as too old.
    let dropped = s.collect(1_000_000, &[Some(9), None]);
    assert!(
        dropped[1].too_old > 0 && s.segments.len() == 1,
        "{dropped:?}"
    );
    // Closed segments every sink has delivered go without a count.
    for i in 20..30u64 {
        s.append(999_000 + i, &payload).unwrap();
    }
    let before = s.segments.len();
    let dropped = s.collect(1_000_000, &[Some(29), Some(29)]);
    assert_eq!(dropped, vec![Dropped::default(); 2]);
    assert!(
        before > 1 && s.segments.len() == 1,
        "{before} segments left {}",
        s.segments.len()
    );
    // Cursor files round-trip.
    let cursor = dir.path().join("cursor-x");
    store_cursor(&cursor, 41).unwrap();
    assert_eq!(load_start(&cursor), Some(Some(41)));
    store_start(&cursor, None).unwrap();
    assert_eq!(load_start(&cursor), Some(None));
    assert_eq!(load_start(&dir.path().join("cursor-missing")), None);
}
