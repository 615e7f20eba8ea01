//! Network address functions: cidrhost, cidrnetmask, cidrsubnet,
//! cidrsubnets (go-cty-funcs on apparentlymart/go-cidr).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hcl::eval::{FuncArgs, FuncDef};
use hcl::Value;

use super::{fixed, int_arg, str_arg, variadic, R};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        ("cidrhost", fixed(2, cidrhost)),
        ("cidrnetmask", fixed(1, cidrnetmask)),
        ("cidrsubnet", fixed(3, cidrsubnet)),
        ("cidrsubnets", variadic(1, cidrsubnets)),
    ]);
}

/// A network: its address as a number, the address width (32 or 128) and
/// the prefix length.
#[derive(Clone, Copy)]
struct Net {
    ip: u128,
    bits: u32,
    prefix: u32,
}

impl Net {
    fn mask(bits: u32, prefix: u32) -> u128 {
        let all = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        if prefix == 0 {
            0
        } else {
            all & !((1u128 << (bits - prefix)) - 1) & all
        }
    }

    fn addr(bits: u32, ip: u128) -> String {
        if bits == 32 {
            Ipv4Addr::from(ip as u32).to_string()
        } else {
            Ipv6Addr::from(ip).to_string()
        }
    }

    fn last(&self) -> u128 {
        self.ip | !Self::mask(self.bits, self.prefix) & Self::mask(self.bits, self.bits)
    }

    fn contains(&self, ip: u128) -> bool {
        ip & Self::mask(self.bits, self.prefix) == self.ip
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Net::addr(self.bits, self.ip), self.prefix)
    }
}

/// Go's net.ParseCIDR, the address masked to the network.
fn parse(s: &str) -> R<Net> {
    let bad = || format!("invalid CIDR expression: invalid CIDR address: {s}");
    let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let (ip, bits) = match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    if prefix > bits {
        return Err(bad());
    }
    Ok(Net {
        ip: ip & Net::mask(bits, prefix),
        bits,
        prefix,
    })
}

fn cidrhost(a: FuncArgs) -> R<Value> {
    let num = int_arg(&a, 1)?;
    let net = parse(&str_arg(&a, 0)?)?;
    let host_len = net.bits - net.prefix;
    let max: u128 = if host_len == 128 {
        u128::MAX
    } else {
        (1u128 << host_len) - 1
    };
    let n: u128 = if num < 0 {
        let back = (-(num + 1)) as u128;
        if back > max {
            return Err(format!(
                "prefix of {} does not accommodate a host numbered {num}",
                net.prefix
            ));
        }
        max - back
    } else {
        num as u128
    };
    if n > max {
        return Err(format!(
            "prefix of {} does not accommodate a host numbered {num}",
            net.prefix
        ));
    }
    Ok(Value::String(Net::addr(net.bits, net.ip | n)))
}

fn cidrnetmask(a: FuncArgs) -> R<Value> {
    let net = parse(&str_arg(&a, 0)?)?;
    Ok(Value::String(Net::addr(
        net.bits,
        Net::mask(net.bits, net.prefix),
    )))
}

fn cidrsubnet(a: FuncArgs) -> R<Value> {
    let newbits = int_arg(&a, 1)?;
    let num = int_arg(&a, 2)?;
    let net = parse(&str_arg(&a, 0)?)?;
    if newbits > 32 {
        return Err("may not extend prefix by more than 32 bits".into());
    }
    if newbits < 0 {
        return Err("argument 2: must not be negative".into());
    }
    let newbits = newbits as u32;
    if net.prefix + newbits > net.bits {
        return Err(format!(
            "insufficient address space to extend prefix of {} by {newbits}",
            net.prefix
        ));
    }
    if num < 0 || (num as u128) >= (1u128 << newbits) {
        return Err(format!(
            "prefix extension of {newbits} does not accommodate a subnet numbered {num}"
        ));
    }
    let prefix = net.prefix + newbits;
    let ip = net.ip | ((num as u128) << (net.bits - prefix));
    Ok(Value::String(
        Net {
            ip,
            bits: net.bits,
            prefix,
        }
        .to_string(),
    ))
}

fn cidrsubnets(a: FuncArgs) -> R<Value> {
    let net = parse(&str_arg(&a, 0)?)?;
    if a.len() == 1 {
        return Ok(Value::Array(vec![]));
    }
    let first = int_arg(&a, 1)? + net.prefix as i64;
    let full = Net::mask(net.bits, net.bits);
    // go-cidr's PreviousSubnet(network, first).
    let first = first.clamp(0, net.bits as i64) as u32;
    let mut current = Net {
        ip: net.ip.wrapping_sub(1) & full & Net::mask(net.bits, first),
        bits: net.bits,
        prefix: first,
    };
    let mut out = Vec::with_capacity(a.len() - 1);
    for i in 1..a.len() {
        let len = int_arg(&a, i)?;
        if len < 1 {
            return Err(format!(
                "argument {}: must extend prefix by at least one bit",
                i + 1
            ));
        }
        if len > 32 {
            return Err(format!(
                "argument {}: may not extend prefix by more than 32 bits",
                i + 1
            ));
        }
        let len = len as u32 + net.prefix;
        if len > net.bits {
            let proto = if net.bits == 32 { "IPv4" } else { "IPv6" };
            return Err(format!(
                "argument {}: would extend prefix to {len} bits, which is too long for an {proto} address",
                i + 1
            ));
        }
        // go-cidr's NextSubnet(current, len).
        let mask = Net::mask(net.bits, len);
        let cur = Net {
            ip: current.last() & mask,
            bits: net.bits,
            prefix: len,
        };
        let last = cur.last().wrapping_add(1) & full;
        let next = Net {
            ip: last & mask,
            bits: net.bits,
            prefix: len,
        };
        if last == 0 || !net.contains(next.ip) {
            return Err(format!(
                "argument {}: not enough remaining address space for a subnet with a prefix of {len} bits after {current}",
                i + 1
            ));
        }
        current = next;
        out.push(Value::String(current.to_string()));
    }
    Ok(Value::Array(out))
}
