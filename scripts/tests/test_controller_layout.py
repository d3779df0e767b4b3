"""scripts/controller-layout on toy crates (python3 -m unittest discover scripts/tests, or
pytest)."""

import contextlib
import importlib.machinery
import importlib.util
import io
import os
import tempfile
import textwrap
import unittest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "controller-layout")
_loader = importlib.machinery.SourceFileLoader("controller_layout", SCRIPT)
_spec = importlib.util.spec_from_loader("controller_layout", _loader)
layout_script = importlib.util.module_from_spec(_spec)
_loader.exec_module(layout_script)

TOY = {
    "lib.rs": """
        mod a;
        mod b;
        mod c;
        mod d;
        mod e;
        mod f;
        mod g;
        mod h;
        mod sub;
        pub use h::H;
    """,
    # a -> b -> c -> a: a circle of three.
    "a.rs": """
        use crate::b::B;
        // use crate::d::D; is a comment, no import
        pub fn g() -> &'static str {
            let brace = '}';
            let text = "} crate::e::x {";
            /* { */
            text
        }
    """,
    "b.rs": """
        use crate::c::C;
        pub struct B;
    """,
    "c.rs": """
        pub struct C;
        fn f() {
            crate::a::g();
        }
    """,
    # d <-> e: a circle of two, one side a path in code.
    "d.rs": """
        use super::e::E;
        pub fn x() {}
    """,
    "e.rs": """
        pub struct E;
        fn call() {
            super::d::x();
        }
    """,
    # f <-> g only through test code: no circle.
    "f.rs": """
        pub fn f() {}

        #[cfg(test)]
        mod tests {
            use crate::g::G;

            #[test]
            fn a_test_that_is_long() {
                let _ = 1;
                let _ = 2;
                let _ = 3;
                let _ = 4;
                let _ = 5;
            }
        }
    """,
    "g.rs": """
        use crate::f::f;
        pub struct G;
    """,
    "h.rs": """
        pub struct H;
    """,
    # Through the re-export in lib.rs to h.rs, a sibling module: it does not climb.
    # sub/up.rs reaches into sub/mod.rs, the module it sits in: it climbs.
    "sub/mod.rs": """
        mod inner;
        mod up;
        use self::inner::Inner;
        pub struct Top;
    """,
    "sub/inner.rs": """
        use crate::H;
        pub struct Inner;
    """,
    "sub/up.rs": """
        use super::Top;
    """,
    "sub/deeper/x.rs": """
        pub fn x() {}
    """,
}


@contextlib.contextmanager
def toy_crate(files=TOY):
    with tempfile.TemporaryDirectory() as root:
        for rel, text in files.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text).lstrip("\n"))
        yield root


class ControllerLayoutTest(unittest.TestCase):
    def test_counts_files_lines_and_floors(self):
        with toy_crate() as root:
            result = layout_script.layout(root)
        self.assertEqual(result["files"], len(TOY))
        self.assertEqual(result["floors"], 3)
        self.assertEqual(result["files_per_floor"], {"1": 9, "2": 3, "3": 1})

    def test_circles_of_three_and_two_are_found_and_test_imports_make_none(self):
        with toy_crate() as root:
            result = layout_script.layout(root)
        self.assertEqual(
            result["circles"],
            [
                {"size": 3, "files": ["a.rs", "b.rs", "c.rs"]},
                {"size": 2, "files": ["d.rs", "e.rs"]},
            ],
        )
        self.assertEqual(result["largest_circle"], 3)

    def test_function_lengths_skip_strings_chars_and_comments(self):
        with toy_crate() as root:
            result = layout_script.layout(root)
        longest = result["longest_functions"][0]
        self.assertEqual((longest["file"], longest["line"], longest["name"]), ("a.rs", 3, "g"))
        self.assertEqual(longest["lines"], 6)
        test = result["longest_test_functions"][0]
        self.assertEqual((test["name"], test["lines"]), ("a_test_that_is_long", 7))
        self.assertNotIn("a_test_that_is_long", [f["name"] for f in result["longest_functions"]])

    def test_only_an_import_into_a_containing_module_climbs(self):
        with toy_crate() as root:
            result = layout_script.layout(root)
        self.assertEqual(
            result["climbing_import_list"],
            [{"file": "sub/up.rs", "line": 1, "path": "super::Top", "to": "sub/mod.rs"}],
        )

    def test_max_circle_fails_only_above_the_limit(self):
        quiet = contextlib.ExitStack()
        quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
        quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
        with toy_crate() as root, quiet:
            self.assertEqual(layout_script.main([root, "--max-circle", "3"]), 0)
            self.assertEqual(layout_script.main([root, "--json", "--max-circle", "2"]), 1)


if __name__ == "__main__":
    unittest.main()
