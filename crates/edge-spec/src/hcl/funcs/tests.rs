//! One table per function, from Nomad's documented examples (and cty's
//! where Nomad's page has none): (call, expected value as HCL).

use super::super::expr::{self, EvalError, Scope};
use crate::parse::Files;
use ::hcl::Value;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn scope(files: Files) -> Scope {
    let mut vars = ::hcl::Map::new();
    vars.insert("name".to_string(), Value::from("Valentina"));
    Scope::with_vars(
        vars,
        BTreeSet::from(["name".to_string()]),
        BTreeSet::new(),
        files,
    )
}

fn run_in(text: &str, scope: &Scope) -> Result<Value, String> {
    let e = hcl_edit::parser::parse_expr(text).map_err(|e| e.to_string())?;
    expr::eval(&e, scope).map_err(|e| match e {
        EvalError::Skipped => "skipped".to_string(),
        EvalError::Problems(p) => p.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "),
    })
}

fn run(text: &str) -> Result<Value, String> {
    run_in(text, &scope(Files::default()))
}

fn check(table: &[(&str, &str)]) {
    for (call, want) in table {
        let want = run(want).unwrap_or_else(|e| panic!("expected {want}: {e}"));
        let got = run(call).unwrap_or_else(|e| panic!("{call}: {e}"));
        assert_eq!(got, want, "{call}");
    }
}

fn fails(table: &[(&str, &str)]) {
    for (call, part) in table {
        let e = run(call).expect_err(call);
        assert!(e.contains(part), "{call}: {e:?} lacks {part:?}");
    }
}

#[test]
fn chomp() {
    check(&[
        (r#"chomp("hello\n")"#, r#""hello""#),
        (r#"chomp("hello\r\n")"#, r#""hello""#),
        (r#"chomp("hello\n\n")"#, r#""hello""#),
    ]);
}

#[test]
fn format() {
    check(&[
        (r#"format("Hello, %s!", "Ander")"#, r#""Hello, Ander!""#),
        (
            r#"format("There are %d lights", 4)"#,
            r#""There are 4 lights""#,
        ),
        (
            r#"format("Hello, %s!", var.name)"#,
            r#""Hello, Valentina!""#,
        ),
        (
            r#"format("%5.2f|%-4d|%04d", 3.14159, 7, 42)"#,
            r#"" 3.14|7   |0042""#,
        ),
        (
            r#"format("%#v %v %t %q", [1], 1.5, true, "a")"#,
            r#""[1] 1.5 true \"a\"""#,
        ),
        (
            r#"format("%x %X %o %b %+d", 255, 255, 8, 5, 3)"#,
            r#""ff FF 10 101 +3""#,
        ),
        (r#"format("%[2]s %[1]s %%", "a", "b")"#, r#""b a %""#),
        (r#"format("%e", 1234.5678)"#, r#""1.234568e+03""#),
    ]);
    fails(&[
        (r#"format("%d")"#, "not enough arguments"),
        (r#"format("%d", "x")"#, "a number is required"),
        (r#"format("%1000000000d", 1)"#, "width or precision"),
        (r#"format("%d", 1.5)"#, "whole number"),
        (r#"format("%z", 1)"#, "unsupported format verb"),
    ]);
}

#[test]
fn formatlist() {
    check(&[
        (
            r#"formatlist("Hello, %s!", ["Valentina", "Ander", "Olivia", "Sam"])"#,
            r#"["Hello, Valentina!", "Hello, Ander!", "Hello, Olivia!", "Hello, Sam!"]"#,
        ),
        (
            r#"formatlist("%s, %s!", "Salutations", ["Valentina", "Ander"])"#,
            r#"["Salutations, Valentina!", "Salutations, Ander!"]"#,
        ),
    ]);
    fails(&[(
        r#"formatlist("%s%s", ["a"], ["b", "c"])"#,
        "different lengths",
    )]);
}

#[test]
fn indent() {
    check(&[(
        r#""  items: ${indent(2, "[\n  foo,\n  bar,\n]\n")}""#,
        r#""  items: [\n    foo,\n    bar,\n  ]\n  ""#,
    )]);
    // A one-line string has nothing to indent, whatever the width.
    check(&[(r#"indent(7877382791427615475, "a")"#, r#""a""#)]);
    fails(&[(r#"indent(1000000000, "a\nb\nc")"#, "more than")]);
}

#[test]
fn join() {
    check(&[
        (r#"join(", ", ["foo", "bar", "baz"])"#, r#""foo, bar, baz""#),
        (r#"join(", ", ["foo"])"#, r#""foo""#),
        (r#"join("-", ["a", 1], [true])"#, r#""a-1-true""#),
    ]);
}

#[test]
fn lower() {
    check(&[
        (r#"lower("HELLO")"#, r#""hello""#),
        (r#"lower("АЛЛО!")"#, r#""алло!""#),
    ]);
}

#[test]
fn upper() {
    check(&[
        (r#"upper("hello")"#, r#""HELLO""#),
        (r#"upper("алло!")"#, r#""АЛЛО!""#),
    ]);
}

#[test]
fn regex_replace() {
    check(&[
        (
            r#"regex_replace("hello world", "world", "everybody")"#,
            r#""hello everybody""#,
        ),
        (
            r#"regex_replace("hello world", "w.*d", "everybody")"#,
            r#""hello everybody""#,
        ),
        (r#"regex_replace("-ab-axxb-", "a(x*)b", "$1W")"#, r#""---""#),
        (
            r#"regex_replace("-ab-axxb-", "a(x*)b", "$${1}W")"#,
            r#""-W-xxW-""#,
        ),
    ]);
    fails(&[(
        r#"regex_replace("a", "(", "b")"#,
        "invalid regular expression",
    )]);
}

#[test]
fn replace() {
    check(&[(r#"replace("1 + 2 + 3", "+", "-")"#, r#""1 - 2 - 3""#)]);
}

#[test]
fn regex() {
    check(&[
        (
            r#"regex("[a-z]+", "53453453.345345aaabbbccc23454")"#,
            r#""aaabbbccc""#,
        ),
        (
            r#"regex("(\\d\\d\\d\\d)-(\\d\\d)-(\\d\\d)", "2019-02-01")"#,
            r#"["2019", "02", "01"]"#,
        ),
        (
            r#"regex("^(?:(?P<scheme>[^:/?#]+):)?(?://(?P<authority>[^/?#]*))?", "https://example.com/x")"#,
            r#"{ authority = "example.com", scheme = "https" }"#,
        ),
    ]);
    fails(&[(r#"regex("[a-z]+", "123")"#, "did not match")]);
}

#[test]
fn regexall() {
    check(&[
        (
            r#"regexall("[a-z]+", "1234abcd5678efgh9")"#,
            r#"["abcd", "efgh"]"#,
        ),
        (r#"length(regexall("[a-z]+", "1234abcd5678efgh9"))"#, "2"),
        (r#"length(regexall("[a-z]+", "123456789")) > 0"#, "false"),
    ]);
}

#[test]
fn split() {
    check(&[
        (r#"split(",", "foo,bar,baz")"#, r#"["foo", "bar", "baz"]"#),
        (r#"split(",", "foo")"#, r#"["foo"]"#),
        (r#"split(",", "")"#, r#"[""]"#),
    ]);
}

#[test]
fn strrev() {
    check(&[
        (r#"strrev("hello")"#, r#""olleh""#),
        (r#"strrev("a ☃")"#, r#""☃ a""#),
    ]);
}

#[test]
fn strlen() {
    check(&[(r#"strlen("hello")"#, "5"), (r#"strlen("☃")"#, "1")]);
}

#[test]
fn startswith_endswith() {
    check(&[
        (r#"startswith("hello world", "hello")"#, "true"),
        (r#"startswith("hello world", "world")"#, "false"),
        (r#"endswith("hello world", "world")"#, "true"),
    ]);
}

#[test]
fn substr() {
    check(&[
        (r#"substr("hello world", 1, 4)"#, r#""ello""#),
        (r#"substr("🤔🤷", 0, 1)"#, r#""🤔""#),
        (r#"substr("hello world", -5, -1)"#, r#""world""#),
        (r#"substr("hello world", 6, 10)"#, r#""world""#),
    ]);
    fails(&[(r#"substr("abc", 10, 1)"#, "outside the string")]);
}

#[test]
fn title() {
    check(&[(r#"title("hello world")"#, r#""Hello World""#)]);
}

#[test]
fn trim() {
    check(&[
        (r#"trim("?!hello?!", "!?")"#, r#""hello""#),
        (r#"trimprefix("helloworld", "hello")"#, r#""world""#),
        (r#"trimprefix("helloworld", "cat")"#, r#""helloworld""#),
        (r#"trimsuffix("helloworld", "world")"#, r#""hello""#),
        (r#"trimspace("  hello\n\n")"#, r#""hello""#),
    ]);
}

#[test]
fn chunklist() {
    check(&[
        (
            r#"chunklist(["a", "b", "c", "d", "e"], 2)"#,
            r#"[["a", "b"], ["c", "d"], ["e"]]"#,
        ),
        (
            r#"chunklist(["a", "b", "c", "d", "e"], 1)"#,
            r#"[["a"], ["b"], ["c"], ["d"], ["e"]]"#,
        ),
    ]);
}

#[test]
fn coalesce() {
    check(&[
        (r#"coalesce("a", "b")"#, r#""a""#),
        (r#"coalesce("", "b")"#, r#""b""#),
        (r#"coalesce(1, 2)"#, "1"),
        (r#"coalesce(["", "b"]...)"#, r#""b""#),
    ]);
    fails(&[(r#"coalesce("", null)"#, "no non-null")]);
}

#[test]
fn coalescelist() {
    check(&[
        (r#"coalescelist(["a", "b"], ["c", "d"])"#, r#"["a", "b"]"#),
        (r#"coalescelist([], ["c", "d"])"#, r#"["c", "d"]"#),
        (r#"coalescelist([[], ["c", "d"]]...)"#, r#"["c", "d"]"#),
    ]);
}

#[test]
fn compact() {
    check(&[(
        r#"compact(["a", "", "b", null, "c"])"#,
        r#"["a", "b", "c"]"#,
    )]);
}

#[test]
fn concat() {
    check(&[(r#"concat(["a", ""], ["b", "c"])"#, r#"["a", "", "b", "c"]"#)]);
}

#[test]
fn contains() {
    check(&[
        (r#"contains(["a", "b", "c"], "a")"#, "true"),
        (r#"contains(["a", "b", "c"], "d")"#, "false"),
    ]);
}

#[test]
fn distinct() {
    check(&[(
        r#"distinct(["a", "b", "a", "c", "d", "b"])"#,
        r#"["a", "b", "c", "d"]"#,
    )]);
}

#[test]
fn element() {
    check(&[
        (r#"element(["a", "b", "c"], 1)"#, r#""b""#),
        (r#"element(["a", "b", "c"], 3)"#, r#""a""#),
        (
            r#"element(["a", "b", "c"], length(["a", "b", "c"])-1)"#,
            r#""c""#,
        ),
    ]);
    fails(&[(r#"element([], 0)"#, "empty list")]);
}

#[test]
fn flatten() {
    check(&[
        (r#"flatten([["a", "b"], [], ["c"]])"#, r#"["a", "b", "c"]"#),
        (
            r#"flatten([[["a", "b"], []], ["c"]])"#,
            r#"["a", "b", "c"]"#,
        ),
    ]);
}

#[test]
fn index() {
    check(&[(r#"index(["a", "b", "c"], "b")"#, "1")]);
    fails(&[(r#"index(["a"], "z")"#, "item not found")]);
}

#[test]
fn keys() {
    check(&[(r#"keys({a=1, c=2, d=3})"#, r#"["a", "c", "d"]"#)]);
}

#[test]
fn values() {
    check(&[(r#"values({a=3, c=2, d=1})"#, "[3, 2, 1]")]);
}

#[test]
fn length() {
    check(&[
        ("length([])", "0"),
        (r#"length(["a", "b"])"#, "2"),
        (r#"length({"a" = "b"})"#, "1"),
        (r#"length("hello")"#, "5"),
        (r#"length("👾🕹️")"#, "3"),
    ]);
}

#[test]
fn lookup() {
    check(&[
        (r#"lookup({a="ay", b="bee"}, "a", "what?")"#, r#""ay""#),
        (r#"lookup({a="ay", b="bee"}, "c", "what?")"#, r#""what?""#),
    ]);
    fails(&[(r#"lookup({a=1}, "c")"#, "no key")]);
}

#[test]
fn merge() {
    check(&[
        (
            r#"merge({a="b", c="d"}, {e="f", c="z"})"#,
            r#"{a="b", c="z", e="f"}"#,
        ),
        (
            r#"merge({a="b"}, {a=[1,2], c="z"}, {d=3})"#,
            r#"{a=[1, 2], c="z", d=3}"#,
        ),
    ]);
}

#[test]
fn range() {
    check(&[
        ("range(3)", "[0, 1, 2]"),
        ("range(1, 4)", "[1, 2, 3]"),
        ("range(1, 8, 2)", "[1, 3, 5, 7]"),
        ("range(1, 4, 0.5)", "[1, 1.5, 2, 2.5, 3, 3.5]"),
        ("range(4, 1)", "[4, 3, 2]"),
        ("range(10, 5, -2)", "[10, 8, 6]"),
    ]);
    fails(&[
        ("range(1e12)", "more than 1024"),
        ("range(1, 2, 0)", "must not be zero"),
        ("range(5, 1, 1)", "wrong way"),
    ]);
}

#[test]
fn reverse() {
    check(&[("reverse([1, 2, 3])", "[3, 2, 1]")]);
}

#[test]
fn setintersection() {
    check(&[(
        r#"setintersection(["a", "b"], ["b", "c"], ["b", "d"])"#,
        r#"["b"]"#,
    )]);
}

#[test]
fn setproduct() {
    check(&[
        (
            r#"setproduct(["development", "staging", "production"], ["app1", "app2"])"#,
            r#"[["development", "app1"], ["development", "app2"], ["staging", "app1"], ["staging", "app2"], ["production", "app1"], ["production", "app2"]]"#,
        ),
        (
            r#"setproduct(["development", "staging", "production"], [])"#,
            "[]",
        ),
        (r#"setproduct(["a"], ["b"])"#, r#"[["a", "b"]]"#),
        (
            r#"setproduct(["staging", "production"], ["a", 2])"#,
            r#"[["staging", "a"], ["staging", "2"], ["production", "a"], ["production", "2"]]"#,
        ),
    ]);
    fails(&[("setproduct(range(1000), range(1000))", "more than")]);
}

#[test]
fn setunion() {
    check(&[(
        r#"setunion(["a", "b"], ["b", "c"], ["d"])"#,
        r#"["a", "b", "c", "d"]"#,
    )]);
}

#[test]
fn slice() {
    check(&[(r#"slice(["a", "b", "c", "d"], 1, 3)"#, r#"["b", "c"]"#)]);
    fails(&[(r#"slice(["a"], 0, 5)"#, "cannot slice")]);
}

#[test]
fn sort() {
    check(&[(r#"sort(["e", "d", "a", "x"])"#, r#"["a", "d", "e", "x"]"#)]);
}

#[test]
fn zipmap() {
    check(&[(r#"zipmap(["a", "b"], [1, 2])"#, "{a = 1, b = 2}")]);
}

#[test]
fn abs() {
    check(&[("abs(23)", "23"), ("abs(0)", "0"), ("abs(-12.4)", "12.4")]);
}

#[test]
fn ceil() {
    check(&[("ceil(5)", "5"), ("ceil(5.1)", "6")]);
}

#[test]
fn floor() {
    check(&[("floor(5)", "5"), ("floor(4.9)", "4")]);
}

#[test]
fn log() {
    check(&[
        ("log(50, 10)", "1.6989700043360185"),
        ("log(16, 2)", "4"),
        ("ceil(log(15, 2))", "4"),
        ("ceil(log(16, 2))", "4"),
        ("ceil(log(17, 2))", "5"),
    ]);
}

#[test]
fn max() {
    check(&[("max(12, 54, 3)", "54"), ("max([12, 54, 3]...)", "54")]);
}

#[test]
fn min() {
    check(&[("min(12, 54, 3)", "3"), ("min([12, 54, 3]...)", "3")]);
}

#[test]
fn parseint() {
    check(&[
        (r#"parseint("100", 10)"#, "100"),
        (r#"parseint("FF", 16)"#, "255"),
        (r#"parseint("-10", 16)"#, "-16"),
        (r#"parseint("1011111011101111", 2)"#, "48879"),
        (r#"parseint("aA", 62)"#, "656"),
    ]);
    fails(&[
        (r#"parseint("12", 2)"#, "cannot parse"),
        (r#"parseint("zzzzzzzzzzzzzzzzzzzzzzzz", 36)"#, "too large"),
    ]);
}

#[test]
fn pow() {
    check(&[("pow(3, 2)", "9"), ("pow(4, 0)", "1")]);
    fails(&[("pow(10, 1000)", "not a finite number")]);
}

#[test]
fn signum() {
    check(&[
        ("signum(-13)", "-1"),
        ("signum(0)", "0"),
        ("signum(344)", "1"),
    ]);
}

#[test]
fn base64() {
    check(&[
        (r#"base64encode("Hello World")"#, r#""SGVsbG8gV29ybGQ=""#),
        (r#"base64decode("SGVsbG8gV29ybGQ=")"#, r#""Hello World""#),
    ]);
    fails(&[(r#"base64decode("!!")"#, "invalid base64")]);
}

#[test]
fn csvdecode() {
    check(&[(
        r#"csvdecode("a,b,c\n1,2,3\n4,5,6")"#,
        r#"[{a = "1", b = "2", c = "3"}, {a = "4", b = "5", c = "6"}]"#,
    )]);
    fails(&[(r#"csvdecode("a,b\n1")"#, "fields")]);
}

#[test]
fn jsondecode() {
    check(&[
        (
            r#"jsondecode("{\"hello\": \"world\"}")"#,
            r#"{hello = "world"}"#,
        ),
        (r#"jsondecode("true")"#, "true"),
    ]);
}

#[test]
fn jsonencode() {
    check(&[
        (
            r#"jsonencode({"hello"="world"})"#,
            r#""{\"hello\":\"world\"}""#,
        ),
        (
            r#"jsonencode({b=[1, true, null], a="<&>"})"#,
            r#""{\"a\":\"\\u003c\\u0026\\u003e\",\"b\":[1,true,null]}""#,
        ),
    ]);
}

#[test]
fn urlencode() {
    check(&[
        (r#"urlencode("Hello World!")"#, r#""Hello+World%21""#),
        (r#"urlencode("☃")"#, r#""%E2%98%83""#),
        (
            r#""http://example.com/search?${urlencode("q=foo&lang=en")}""#,
            r#""http://example.com/search?q%3Dfoo%26lang%3Den""#,
        ),
    ]);
}

#[test]
fn yaml() {
    check(&[
        (
            r#"yamlencode({"a":"b", "c":"d"})"#,
            r#""\"a\": \"b\"\n\"c\": \"d\"\n""#,
        ),
        (
            r#"yamlencode({"foo":[1, 2, 3], "bar": "baz"})"#,
            r#""\"bar\": \"baz\"\n\"foo\":\n- 1\n- 2\n- 3\n""#,
        ),
        (
            r#"yamlencode({"foo":[1, {"a":"b","c":"d"}, 3], "bar": "baz"})"#,
            r#""\"bar\": \"baz\"\n\"foo\":\n- 1\n- \"a\": \"b\"\n  \"c\": \"d\"\n- 3\n""#,
        ),
        (r#"yamldecode("hello: world")"#, r#"{hello = "world"}"#),
        (r#"yamldecode("true")"#, "true"),
        (
            r#"yamldecode("{a: &foo [1, 2, 3], b: *foo}")"#,
            "{a = [1, 2, 3], b = [1, 2, 3]}",
        ),
        (
            r#"yamldecode(yamlencode({x = [1, {y = "z"}], w = {}}))"#,
            r#"{x = [1, {y = "z"}], w = {}}"#,
        ),
    ]);
}

#[test]
fn hashes() {
    check(&[
        (
            r#"md5("hello world")"#,
            r#""5eb63bbbe01eeed093cb22bb8f5acdc3""#,
        ),
        (
            r#"sha1("hello world")"#,
            r#""2aae6c35c94fcfb415dbe95f408b9ce91ee846ed""#,
        ),
        (
            r#"sha256("hello world")"#,
            r#""b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9""#,
        ),
        (
            r#"sha512("hello world")"#,
            r#""309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f""#,
        ),
        (
            r#"base64sha256("hello world")"#,
            r#""uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=""#,
        ),
    ]);
}

#[test]
fn uuidv5() {
    check(&[
        (
            r#"uuidv5("dns", "www.terraform.io")"#,
            r#""a5008fae-b28c-5ba5-96cd-82b4c53552d6""#,
        ),
        (
            r#"uuidv5("url", "https://www.terraform.io/")"#,
            r#""9db6f67c-dd95-5ea0-aa5b-e70e5c5f7cf5""#,
        ),
        (
            r#"uuidv5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.terraform.io")"#,
            r#""a5008fae-b28c-5ba5-96cd-82b4c53552d6""#,
        ),
    ]);
    fails(&[
        ("uuidv4()", "random"),
        ("timestamp()", "variable"),
        (r#"bcrypt("x")"#, "not supported"),
    ]);
}

#[test]
fn formatdate() {
    check(&[
        (
            r#"formatdate("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z")"#,
            r#""02 Jan 2018 23:12 UTC""#,
        ),
        (
            r#"formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", "2018-01-02T23:12:01Z")"#,
            r#""Tuesday, 02-Jan-18 23:12:01 UTC""#,
        ),
        (
            r#"formatdate("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00")"#,
            r#""Tue, 02 Jan 2018 23:12:01 -0800""#,
        ),
        (
            r#"formatdate("MMM DD, YYYY", "2018-01-02T23:12:01Z")"#,
            r#""Jan 02, 2018""#,
        ),
        (
            r#"formatdate("HH:mmaa", "2018-01-02T23:12:01Z")"#,
            r#""11:12pm""#,
        ),
        (
            r#"formatdate("h'h'mm", "2018-01-02T23:12:01-08:00")"#,
            r#""23h12""#,
        ),
        (
            r#"formatdate("H 'o''clock'", "2018-01-02T23:12:01-08:00")"#,
            r#""11 o'clock""#,
        ),
    ]);
    fails(&[
        (r#"formatdate("YYYY", "yesterday")"#, "RFC 3339"),
        (
            r#"formatdate("YYYY", "2018-01-02T23:12:01é1234")"#,
            "RFC 3339",
        ),
    ]);
}

#[test]
fn timeadd() {
    check(&[
        (
            r#"timeadd("2017-11-22T00:00:00Z", "10m")"#,
            r#""2017-11-22T00:10:00Z""#,
        ),
        (
            r#"timeadd("2017-11-22T00:00:00Z", "-1h30m")"#,
            r#""2017-11-21T22:30:00Z""#,
        ),
        (
            r#"timeadd("2017-12-31T23:00:00+01:00", "1h")"#,
            r#""2018-01-01T00:00:00+01:00""#,
        ),
    ]);
    fails(&[(
        r#"timeadd("2017-11-22T00:00:00Z", "10 years")"#,
        "not a duration",
    )]);
}

#[test]
fn cidrhost() {
    check(&[
        (r#"cidrhost("10.12.112.0/20", 16)"#, r#""10.12.112.16""#),
        (r#"cidrhost("10.12.112.0/20", 268)"#, r#""10.12.113.12""#),
        (
            r#"cidrhost("fd00:fd12:3456:7890:00a2::/72", 34)"#,
            r#""fd00:fd12:3456:7890::22""#,
        ),
        (r#"cidrhost("10.0.0.0/24", -1)"#, r#""10.0.0.255""#),
    ]);
    fails(&[(r#"cidrhost("10.0.0.0/24", 256)"#, "no host number")]);
}

#[test]
fn cidrnetmask() {
    check(&[(r#"cidrnetmask("172.16.0.0/12")"#, r#""255.240.0.0""#)]);
}

#[test]
fn cidrsubnet() {
    check(&[
        (r#"cidrsubnet("172.16.0.0/12", 4, 2)"#, r#""172.18.0.0/16""#),
        (r#"cidrsubnet("10.1.2.0/24", 4, 15)"#, r#""10.1.2.240/28""#),
        (
            r#"cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162)"#,
            r#""fd00:fd12:3456:7800:a200::/72""#,
        ),
    ]);
    fails(&[(
        r#"cidrsubnet("10.0.0.0/24", 4, 16)"#,
        "does not accommodate",
    )]);
}

#[test]
fn cidrsubnets() {
    check(&[
        (
            r#"cidrsubnets("10.1.0.0/16", 4, 4, 8, 4)"#,
            r#"["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]"#,
        ),
        (
            r#"cidrsubnets("fd00:fd12:3456:7890::/56", 16, 16, 16, 32)"#,
            r#"["fd00:fd12:3456:7800::/72", "fd00:fd12:3456:7800:100::/72", "fd00:fd12:3456:7800:200::/72", "fd00:fd12:3456:7800:300::/88"]"#,
        ),
        (
            r#"[for cidr_block in cidrsubnets("10.0.0.0/8", 8, 8, 8, 8) : cidrsubnets(cidr_block, 4, 4)]"#,
            r#"[["10.0.0.0/20", "10.0.16.0/20"], ["10.1.0.0/20", "10.1.16.0/20"], ["10.2.0.0/20", "10.2.16.0/20"], ["10.3.0.0/20", "10.3.16.0/20"]]"#,
        ),
    ]);
    fails(&[(
        r#"cidrsubnets("10.0.0.0/30", 1, 1, 1)"#,
        "not enough remaining address space",
    )]);
}

#[test]
fn conversions() {
    check(&[
        (r#"tobool("true")"#, "true"),
        ("tobool(null)", "null"),
        (r#"tonumber("1")"#, "1"),
        (r#"tonumber("1.5")"#, "1.5"),
        (r#"tostring(1)"#, r#""1""#),
        (r#"tolist(["a", "b", 3])"#, r#"["a", "b", "3"]"#),
        (r#"toset(["c", "b", "b"])"#, r#"["b", "c"]"#),
        (r#"tomap({"a" = 1, "b" = 2})"#, "{a = 1, b = 2}"),
        (r#"convert("1", number)"#, "1"),
        (r#"convert(["a", 2], list(string))"#, r#"["a", "2"]"#),
        (r#"convert(1, any)"#, "1"),
    ]);
    fails(&[
        (r#"tobool("yes")"#, "cannot convert"),
        (r#"tonumber("hello")"#, "cannot convert"),
        ("tostring([])", "cannot convert"),
    ]);
}

#[test]
fn try_and_can() {
    check(&[
        (r#"try(var.name, "x")"#, r#""Valentina""#),
        (r#"try({a = 1}.b, "fallback")"#, r#""fallback""#),
        (r#"try(tonumber("x"), tonumber("2"))"#, "2"),
        (r#"can(regex("^[a-z]+$", "abc"))"#, "true"),
        (r#"can(regex("^[a-z]+$", "ABC"))"#, "false"),
        (r#"can(try(tonumber("x"), 1))"#, "true"),
    ]);
    fails(&[
        (
            r#"try(tonumber("x"), {}.b)"#,
            "no argument could be evaluated",
        ),
        (
            r#"[for x in ["1"] : try(tonumber(x), 0)]"#,
            "`for` expression",
        ),
    ]);
}

#[test]
fn files() {
    check(&[
        (r#"basename("foo/bar/baz.txt")"#, r#""baz.txt""#),
        (r#"dirname("foo/bar/baz.txt")"#, r#""foo/bar""#),
        (r#"dirname("/x")"#, r#""/""#),
    ]);
    fails(&[
        (r#"file("hello.txt")"#, "files cannot be read here"),
        (r#"abspath("x")"#, "not supported"),
        (r#"fileset(".", "*")"#, "not supported"),
    ]);
    let files = Files::new(|name| match name {
        "hello.txt" => Ok("Hello World".to_string()),
        other => Err(format!("{other}: no such file")),
    });
    let s = scope(files);
    assert_eq!(
        run_in(r#"file("hello.txt")"#, &s),
        Ok(Value::from("Hello World"))
    );
    assert_eq!(
        run_in(r#"filebase64("hello.txt")"#, &s),
        Ok(Value::from("SGVsbG8gV29ybGQ="))
    );
    assert_eq!(
        run_in(r#"fileexists("hello.txt")"#, &s),
        Ok(Value::Bool(true))
    );
    assert_eq!(run_in(r#"fileexists("nope")"#, &s), Ok(Value::Bool(false)));
    let e = run_in(r#"file("nope")"#, &s).expect_err("missing");
    assert!(e.contains("file(): cannot read \"nope\""), "{e}");
}

#[test]
fn errors_name_the_function_and_unknown_ones_are_refused() {
    fails(&[
        (
            r#"upper("a", "b")"#,
            "upper(): expected 1 positional arguments, got 2",
        ),
        (r#"nosuch(1)"#, "unknown function `nosuch`"),
        (r#"upper([])"#, "upper(): a string is required, not a list"),
    ]);
}

#[test]
fn runtime_values_in_calls_are_refused_but_pass_through_ones_kept() {
    fails(&[
        (
            r#"upper("${attr.kernel.name}")"#,
            "only known where the task runs, but upper()",
        ),
        (r#"upper(join(",", [node.unique.name]))"#, "upper()"),
    ]);
    check(&[
        (
            r#"join("/", ["${NOMAD_TASK_DIR}", "x"])"#,
            r#""$${NOMAD_TASK_DIR}/x""#,
        ),
        (r#"coalesce("", "${meta.rack}")"#, r#""$${meta.rack}""#),
        (r#"[for node in ["a"] : upper(node)]"#, r#"["A"]"#),
    ]);
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300)
            .prop_map(|f| ::hcl::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("10.0.0.0/8".to_string()),
            Just("2018-01-02T23:12:01Z".to_string()),
            Just("%[3]*.-9999999999d%v%#v".to_string()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::String),
        (0u64..100_000_000_000).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the arguments, every function answers or errs.
    #[test]
    fn random_arguments_never_panic(args in prop::collection::vec(value(), 0..4)) {
        let s = scope(Files::default());
        for &(name, ..) in super::TABLE {
            let mut call = ::hcl::expr::FuncCall::new(name);
            call.args = args.iter().cloned().map(::hcl::Expression::from).collect();
            let call = ::hcl::Expression::from(call);
            let _ = ::hcl::eval::Evaluate::evaluate(&call, &s.ctx);
        }
    }
}
