//! GUID partition tables (UEFI 2.10, section 5.3).
//!
//! The primary header is at LBA 1, the backup at the disk's last LBA. Each copy is checked on
//! its own (header CRC, entry-array CRC, sane sizes); one good copy is enough, and a bad one
//! is reported as a warning.

use super::{Partition, PartitionTable, Scheme};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::le::LeFields;

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Largest entry array read (the usual one is 16 KiB): bounds memory on corrupt headers.
const MAX_ENTRY_BYTES: u64 = 4 << 20;

/// Reads the GPT with `ss`-byte sectors. `Ok(None)` when neither copy has a signature.
pub fn read(dev: &dyn BlockDev, ss: u32) -> Result<Option<PartitionTable>> {
    let ss64 = u64::from(ss);
    let sectors = dev.len() / ss64;
    if sectors < 3 {
        return Ok(None);
    }
    let primary = read_copy(dev, ss, 1);
    let backup_lba = match &primary {
        Ok(Some(h)) if h.alternate_lba < sectors && h.alternate_lba > 1 => h.alternate_lba,
        _ => sectors - 1,
    };
    let mut backup = read_copy(dev, ss, backup_lba);
    if backup_lba != sectors - 1 && !matches!(backup, Ok(Some(_))) {
        backup = read_copy(dev, ss, sectors - 1);
    }
    let mut warnings = Vec::new();
    let chosen = match (primary, backup) {
        (Ok(Some(p)), Ok(Some(_))) => p,
        (Ok(Some(p)), b) => {
            warnings.push(format!("backup GPT: {}", describe(b)));
            p
        }
        (p, Ok(Some(b))) => {
            warnings.push(format!(
                "primary GPT: {}; using the backup copy",
                describe(p)
            ));
            b
        }
        (Ok(None), Ok(None)) => return Ok(None),
        (p, b) => {
            return Err(Error::Invalid(format!(
                "GPT with {ss}-byte sectors is damaged: primary: {}; backup: {}",
                describe(p),
                describe(b)
            )))
        }
    };
    Ok(Some(PartitionTable {
        scheme: Scheme::Gpt,
        sector_size: ss,
        disk_id: guid_string(&chosen.disk_guid),
        partitions: chosen.partitions,
        warnings,
    }))
}

fn describe(r: Result<Option<Header>>) -> String {
    match r {
        Ok(Some(_)) => "good".into(),
        Ok(None) => "missing".into(),
        Err(e) => e.to_string(),
    }
}

struct Header {
    alternate_lba: u64,
    disk_guid: [u8; 16],
    partitions: Vec<Partition>,
}

fn bad(lba: u64, what: String) -> Error {
    Error::Invalid(format!("GPT header at LBA {lba}: {what}"))
}

/// One header and its entry array; `Ok(None)` without a signature.
fn read_copy(dev: &dyn BlockDev, ss: u32, lba: u64) -> Result<Option<Header>> {
    let ss64 = u64::from(ss);
    let sectors = dev.len() / ss64;
    let mut sector = vec![0u8; ss as usize];
    dev.read_at(lba * ss64, &mut sector)?;
    if &sector[..8] != SIGNATURE {
        return Ok(None);
    }
    let f = LeFields(&sector);
    let header_size = f.u32(12);
    if !(92..=ss).contains(&header_size) {
        return Err(bad(lba, format!("header size {header_size}")));
    }
    let mut hdr = sector[..header_size as usize].to_vec();
    hdr[16..20].fill(0);
    let stored_crc = f.u32(16);
    if crc32(&hdr) != stored_crc {
        return Err(bad(lba, "header CRC32 mismatch".into()));
    }
    let my_lba = f.u64(24);
    if my_lba != lba {
        return Err(bad(lba, format!("says it is at LBA {my_lba}")));
    }
    let (first_usable, last_usable) = (f.u64(40), f.u64(48));
    if first_usable > last_usable || last_usable >= sectors {
        return Err(bad(
            lba,
            format!("usable LBAs {first_usable}-{last_usable} do not fit in {sectors} sectors"),
        ));
    }
    let entries_lba = f.u64(72);
    let count = u64::from(f.u32(80));
    let entry_size = u64::from(f.u32(84));
    if entry_size < 128 || entry_size % 8 != 0 {
        return Err(bad(lba, format!("entry size {entry_size}")));
    }
    let bytes = count * entry_size; // both < 2^32: no overflow
    let fits = entries_lba
        .checked_mul(ss64)
        .and_then(|b| b.checked_add(bytes))
        .is_some_and(|end| end <= dev.len());
    if bytes > MAX_ENTRY_BYTES || !fits {
        return Err(bad(
            lba,
            format!("{count} entries of {entry_size} bytes at LBA {entries_lba} do not fit"),
        ));
    }
    let mut entries = vec![0u8; crate::le::usize_of(bytes)?];
    dev.read_at(entries_lba * ss64, &mut entries)?;
    if crc32(&entries) != f.u32(88) {
        return Err(bad(lba, "partition entry array CRC32 mismatch".into()));
    }
    let mut partitions = Vec::new();
    for (i, e) in entries
        .chunks_exact(crate::le::usize_of(entry_size)?)
        .enumerate()
    {
        let type_guid: [u8; 16] = e[..16].try_into().expect("16 bytes");
        if type_guid == [0; 16] {
            continue;
        }
        let g = LeFields(e);
        let (first, last) = (g.u64(32), g.u64(40));
        if first > last || last >= sectors {
            return Err(bad(
                lba,
                format!(
                    "entry {}: LBAs {first}-{last} do not fit in {sectors} sectors",
                    i + 1
                ),
            ));
        }
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        let type_id = guid_string(&type_guid);
        partitions.push(Partition {
            number: u32::try_from(i + 1)
                .map_err(|_| bad(lba, format!("{count} partition entries")))?,
            start: first * ss64,
            len: (last - first + 1) * ss64,
            type_name: type_name(&type_id).to_string(),
            type_id,
            name: String::from_utf16_lossy(&name),
        });
    }
    Ok(Some(Header {
        alternate_lba: f.u64(32),
        disk_guid: sector[56..72].try_into().expect("16 bytes"),
        partitions,
    }))
}

/// A GUID in its textual form (the first three fields are stored little-endian).
pub fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

/// Readable names of common partition type GUIDs.
pub fn type_name(guid: &str) -> &'static str {
    match guid {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI system",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3" => "Windows LDM metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD" => "Windows LDM data",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "CA7D7CCB-63ED-4C53-861C-1742536059CC" => "Linux LUKS",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "Linux home",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "48465300-0000-11AA-AA11-00306543ECAC" => "Apple HFS+",
        "7C3457EF-0000-11AA-AA11-00306543ECAC" => "Apple APFS",
        "516E7CB6-6ECF-11D6-8FF8-00022D09712B" => "FreeBSD",
        _ => "unknown",
    }
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_text_form() {
        let g = [
            0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47,
            0x7D, 0xE4,
        ];
        assert_eq!(guid_string(&g), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        assert_eq!(type_name(&guid_string(&g)), "Linux filesystem");
    }
}
