use std::io::Write;

use super::*;

const BITBRAINS: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]
1375308176;\t2;\t5851.9989;\t747.1051929;\t12.77;\t8388608.0;\t1308620.0;\t0.0;\t1.0;\t11.0;\t27.2
1375308476;\t2;\t5851.9989;\t2925.99945;\t50.0;\t8388608.0;\t0.0;\t0.0;\t1.0;\t13.4;\t30.6
";

const AZURE: &str = "t_seconds,vm_a_p24,vm_b_p8
0,1.5,50.0
300,,100.0
600,3.0,0.5
";

#[test]
fn generic_csv_with_header_and_missing_readings() {
    let t = parse_csv(
        "timestamp_s,cpu_cores,memory_bytes\n0,0.5,1000\n60,,2000\n120,0.25,\n".as_bytes(),
        "x.csv",
    )
    .unwrap();
    assert_eq!(t.points.len(), 3);
    assert_eq!(
        t.points[0].usage,
        Usage {
            at: 0.0,
            cpu_cores: Some(0.5),
            memory_bytes: Some(1000.0)
        }
    );
    assert_eq!(t.points[1].usage.cpu_cores, None);
    assert_eq!(t.points[2].usage.memory_bytes, None);
    assert!(t.points.iter().all(|p| p.manual.is_none()));
    // no header is fine too
    assert_eq!(
        parse_csv("5,1,2\n".as_bytes(), "x").unwrap().points.len(),
        1
    );
}

#[test]
fn bad_csv_names_the_line_and_the_problem() {
    let err = |text: &str| {
        parse_csv(text.as_bytes(), "bad.csv")
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("0,1,2\n60,abc,2\n").contains("line 2: cpu_cores is not a non-negative number"),
        "{}",
        err("0,1,2\n60,abc,2\n")
    );
    assert!(err("0,1,2\n60,1\n").contains("line 2: expected 3 fields"));
    assert!(err("60,1,2\n0,1,2\n").contains("goes back in time"));
    assert!(err("0,-1,2\n").contains("not a non-negative number"));
    assert!(err("0,NaN,2\n").contains("not a non-negative number"));
    assert!(err(",1,2\n").contains("timestamp_s is missing"));
}

#[test]
fn bitbrains_units_and_manual_sizing() {
    let t = parse_bitbrains(BITBRAINS.as_bytes(), "1.csv").unwrap();
    assert_eq!(t.points.len(), 2);
    let p = t.points[0];
    // 747.1 MHz of a 2925.99945 MHz core
    assert!((p.usage.cpu_cores.unwrap() - 747.1051929 / 2925.99945).abs() < 1e-9);
    assert_eq!(p.usage.memory_bytes, Some(1308620.0 * 1024.0));
    assert_eq!(p.usage.at, 1375308176.0);
    let m = p.manual.unwrap();
    assert_eq!((m.cpu_request, m.cpu_limit), (Some(2.0), Some(2.0)));
    assert_eq!(m.memory_limit, Some(8388608.0 * 1024.0));
    // one full core; memory 0 is "no reading"
    assert!((t.points[1].usage.cpu_cores.unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(t.points[1].usage.memory_bytes, None);
    let nothing = "1375308176;\t0;\t0.0;\t0.0;\t0.0;\t0.0;\t512.0\n";
    let t = parse_bitbrains(nothing.as_bytes(), "20.csv").unwrap();
    assert_eq!(
        (t.points[0].usage.cpu_cores, t.points[0].manual),
        (None, None)
    );
    assert_eq!(t.points[0].usage.memory_bytes, Some(512.0 * 1024.0));
    let short = parse_bitbrains("1375308176;\t2;\t5851\n".as_bytes(), "b").unwrap_err();
    assert!(
        short
            .to_string()
            .contains("line 1: expected at least 7 fields")
    );
}

#[test]
fn azure_columns_percent_of_capacity() {
    let one = parse_azure(AZURE.as_bytes(), "az.csv", 1.0, Some("vm_b_p8")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "az.csv:vm_b_p8");
    let cpu: Vec<_> = one[0].points.iter().map(|p| p.usage.cpu_cores).collect();
    assert_eq!(cpu, vec![Some(0.5), Some(1.0), Some(0.005)]);
    assert!(
        one[0]
            .points
            .iter()
            .all(|p| p.usage.memory_bytes.is_none() && p.manual.is_none())
    );
    // four-core VMs: 50% is two cores; an empty cell is no reading
    let all = parse_azure(AZURE.as_bytes(), "az.csv", 4.0, None).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].points[0].usage.cpu_cores, Some(0.06));
    assert_eq!(all[0].points[1].usage.cpu_cores, None);
    let missing = parse_azure(AZURE.as_bytes(), "az.csv", 1.0, Some("nope")).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no column \"nope\"; columns are vm_a_p24, vm_b_p8")
    );
    let ragged = parse_azure("t_seconds,a\n0,1,2\n".as_bytes(), "az", 1.0, None).unwrap_err();
    assert!(
        ragged
            .to_string()
            .contains("line 2: expected 2 fields, got 3")
    );
}

#[test]
fn files_are_read_gzipped_or_plain() {
    let dir = std::env::temp_dir().join(format!("snug-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("7.csv");
    std::fs::write(&plain, BITBRAINS).unwrap();
    let gz = dir.join("7.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(BITBRAINS.as_bytes()).unwrap();
    enc.finish().unwrap();
    let a = read(&plain, TraceFormat::Bitbrains, None, 1.0).unwrap();
    let b = read(&gz, TraceFormat::Bitbrains, None, 1.0).unwrap();
    assert_eq!(a.points, b.points);
    assert_eq!(b.name, "7.csv.gz");
    let az = dir.join("az.csv");
    std::fs::write(&az, AZURE).unwrap();
    assert!(
        read(&az, TraceFormat::Azure, None, 1.0)
            .unwrap_err()
            .to_string()
            .contains("--column")
    );
    assert_eq!(
        read(&az, TraceFormat::Azure, Some("vm_a_p24"), 1.0)
            .unwrap()
            .points
            .len(),
        3
    );
    let missing = read(&dir.join("nope.csv"), TraceFormat::Csv, None, 1.0).unwrap_err();
    assert!(missing.to_string().contains("nope.csv"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_bytes_are_an_error_not_a_crash() {
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert!(parse_csv(garbage.as_slice(), "g").is_err());
    assert!(parse_bitbrains(garbage.as_slice(), "g").is_err());
    assert!(parse_azure(garbage.as_slice(), "g", 1.0, None).is_err());
    assert_eq!("csv".parse::<TraceFormat>(), Ok(TraceFormat::Csv));
    assert!("xml".parse::<TraceFormat>().is_err());
}
