# The models live in the migrations only: the tests deploy migrations, they never make them.
