//! Load generator for imagechat.

fn main() {}
