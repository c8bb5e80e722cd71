use super::*;

#[test]
fn etags_are_decimal_versions() {
    assert_eq!(etag_arg(None).unwrap(), None);
    assert_eq!(etag_arg(Some(String::new())).unwrap(), None);
    assert_eq!(etag_arg(Some("007".into())).unwrap().as_deref(), Some("7"));
    assert!(matches!(
        etag_arg(Some("abc".into())),
        Err(StateError::EtagInvalid(_))
    ));
}

#[test]
fn reads_replicas_from_info() {
    let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmaster_repl_offset:0\r\n";
    assert_eq!(connected_replicas(info), 2);
    assert_eq!(connected_replicas("# Replication\r\nrole:master\r\n"), 0);
}

#[test]
fn decodes_the_get_script_reply() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    assert_eq!(decode_get(Value::Array(vec![Value::Int(0)]), now), Ok(None));
    let hash = Value::Array(vec![
        Value::Int(1),
        Value::BulkString(b"{\"a\":1}".to_vec()),
        Value::BulkString(b"3".to_vec()),
        Value::Int(1_500),
    ]);
    assert_eq!(
        decode_get(hash, now),
        Ok(Some(Item {
            value: Bytes::from_static(b"{\"a\":1}"),
            etag: Some("3".into()),
            expires: Some(now + Duration::from_millis(1_500)),
        }))
    );
    let plain = Value::Array(vec![
        Value::Int(2),
        Value::BulkString(b"old".to_vec()),
        Value::BulkString(Vec::new()),
        Value::Int(-1),
    ]);
    assert_eq!(
        decode_get(plain, now),
        Ok(Some(Item {
            value: Bytes::from_static(b"old"),
            etag: None,
            expires: None,
        }))
    );
    assert!(decode_get(Value::Okay, now).is_err());
}
